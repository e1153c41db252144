//! Why a background job failed, typed by the job and carrying the library error it ended on, so
//! that the window and the CLI can tell a stop from a divergence from a crash instead of parsing
//! text. Each message is complete on its own: the wrapped error is part of the message and not
//! chained again as a source, so a printer of error chains shows it once.

use crate::graph::GraphError;
use crate::quant::QuantError;
use crate::runtime::RuntimeError;
use crate::train::TrainError;
use thiserror::Error;

/// A job's failure, as [`super::JobEvent::Failed`] reports it.
#[derive(Debug, Error)]
pub enum JobError {
    #[error("training failed: {0}")]
    Train(TrainError),
    #[error("evaluation failed: {0}")]
    Evaluate(GraphError),
    #[error("QAT failed: {0}")]
    Qat(super::QatError),
    /// Stop was pressed during a sensitivity sweep (it keeps no partial result).
    #[error("the sensitivity sweep was cancelled")]
    SweepCancelled,
    #[error("sensitivity sweep failed: {0}")]
    Sweep(QuantError),
    #[error("the search failed: {0}")]
    Search(QuantError),
    /// The plan worker could not prepare the model (e.g. it is already quantized).
    #[error("the plan tools cannot work on this model: {0}")]
    PlanTools(QuantError),
    /// The worker panicked; the window keeps running.
    #[error("the {worker} worker crashed ({message}); the window keeps running, please report it")]
    Crashed { worker: String, message: String },
}

/// Why the integer-runtime check of a plan (convert, then evaluate) failed.
#[derive(Debug, Error)]
pub enum IntegerCheckError {
    #[error("cannot convert the plan to the integer runtime: {0}")]
    Convert(RuntimeError),
    #[error("the integer runtime failed on the check images: {0}")]
    Run(RuntimeError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn messages_name_the_job_and_do_not_chain_the_cause_twice() {
        let e = JobError::Evaluate(GraphError::NonFinite {
            node: "conv1".into(),
        });
        let text = e.to_string();
        assert!(text.starts_with("evaluation failed: "), "{text}");
        assert!(text.contains("conv1"), "{text}");
        assert!(e.source().is_none(), "the cause is in the message already");
        let c = JobError::Crashed {
            worker: "qatlas-train".into(),
            message: "index out of bounds".into(),
        };
        assert!(
            c.to_string()
                .contains("qatlas-train worker crashed (index out of bounds)")
        );
    }
}
