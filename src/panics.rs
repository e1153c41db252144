//! Turning a caught panic into a message: the payload of `std::panic::catch_unwind` is a
//! `&str` or a `String` for every `panic!` with a message. Used where a panic is caught and
//! reported as an error (a crashed worker, a third-party decoder failing on a file).
//! Depends on nothing in the crate.

use std::any::Any;

/// The panic's message, or "no message" for a payload of another type.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_str_and_string_panics_and_none_for_others() {
        let str_panic = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(&*str_panic), "plain");
        let n = 7;
        let string_panic = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(&*string_panic), "formatted 7");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(42u8)).unwrap_err();
        assert_eq!(panic_message(&*other), "no message");
    }
}
