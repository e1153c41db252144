//! One-shot background tasks of the studio: open a model file, decode a dataset, build a fresh
//! network, write a file, wait for a file dialog. Each runs a closure on its own thread, sends
//! its single result over a channel and wakes the UI through the injected [`Waker`]; the UI
//! polls without blocking. Long, cancellable work with progress events belongs in
//! [`crate::jobs`] instead. Knows nothing of egui.

use crate::jobs::Waker;
use std::future::Future;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};

/// A closure running on its own thread, with a label the status line shows while it runs.
pub struct Task<T> {
    label: String,
    rx: Receiver<T>,
}

/// What polling a task found.
#[derive(Debug, PartialEq)]
pub enum Polled<T> {
    /// Still running.
    Pending,
    /// Finished with this result.
    Done(T),
    /// The thread ended without a result (it panicked).
    Lost,
}

impl<T: Send + 'static> Task<T> {
    /// Starts `work` on a new thread; `waker` is called once its result is ready.
    pub fn spawn(
        label: impl Into<String>,
        waker: Waker,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<Task<T>> {
        let (tx, rx) = sync_channel(1);
        std::thread::Builder::new()
            .name("qatlas-task".to_string())
            .spawn(move || {
                let out = work();
                // A closed receiver means the studio no longer wants the result: dropping it is right.
                let _ = tx.send(out);
                waker();
            })?;
        Ok(Task {
            label: label.into(),
            rx,
        })
    }
}

impl<T> Task<T> {
    /// What the task is doing, for the status line.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The result if it is ready; never blocks.
    pub fn poll(&mut self) -> Polled<T> {
        match self.rx.try_recv() {
            Ok(v) => Polled::Done(v),
            Err(TryRecvError::Empty) => Polled::Pending,
            Err(TryRecvError::Disconnected) => Polled::Lost,
        }
    }
}

/// Runs a future to completion on the current (worker) thread, parking between polls.
///
/// The studio creates native file dialogs on the UI thread (as `rfd` recommends) and waits for
/// them here, inside a [`Task`], so the window keeps drawing while a dialog is open.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => return v,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn wait<T>(task: &mut Task<T>) -> Polled<T> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match task.poll() {
                Polled::Pending if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                other => return other,
            }
        }
    }

    #[test]
    fn delivers_the_result_and_wakes_once() {
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        let mut task = Task::spawn(
            "adding",
            Arc::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
            || 40 + 2,
        )
        .unwrap();
        assert_eq!(task.label(), "adding");
        assert_eq!(wait(&mut task), Polled::Done(42));
        // The result is handed out once; afterwards the channel is closed.
        assert_eq!(task.poll(), Polled::Lost);
        let deadline = Instant::now() + Duration::from_secs(10);
        while woken.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn block_on_waits_for_a_future_woken_from_another_thread() {
        /// Pending until a helper thread, started on the first poll, sends a value and wakes it.
        struct FromThread {
            rx: Receiver<u32>,
            tx: Option<std::sync::mpsc::SyncSender<u32>>,
        }
        impl Future for FromThread {
            type Output = u32;
            fn poll(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<u32> {
                if let Ok(v) = self.rx.try_recv() {
                    return std::task::Poll::Ready(v);
                }
                if let Some(tx) = self.tx.take() {
                    let waker = cx.waker().clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(5));
                        tx.send(7).unwrap();
                        waker.wake();
                    });
                }
                std::task::Poll::Pending
            }
        }
        let (tx, rx) = sync_channel(1);
        assert_eq!(block_on(FromThread { rx, tx: Some(tx) }), 7);
    }
}
