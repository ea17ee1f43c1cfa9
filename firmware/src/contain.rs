//! Containment of third-party code that may panic on hostile input.
//!
//! tract panics on some malformed ONNX graphs (its issues #499 and #2391). A model a user brings must not
//! take the device down, so every call into tract on such a model runs through [`contain`]: a panic becomes
//! an error message, and the panic hook stays quiet for it so the user sees one clear error, not a Rust
//! backtrace. Panics anywhere else are still reported as usual.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

static QUIET_HOOK: Once = Once::new();

/// Runs `f`; a panic inside it is returned as `Err` with the panic's message. Nothing `f` touched may be
/// used after a panic except what it returned, so callers pass closures that own or only read their data.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CONTAINED.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = CONTAINED.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_the_value_passes_through() {
        assert_eq!(contain(|| 7), Ok(7));
        let e = contain(|| -> u32 { panic!("graph node {} is odd", 3) }).unwrap_err();
        assert_eq!(e, "graph node 3 is odd");
        let e = contain(|| -> u32 { std::panic::panic_any(5u8) }).unwrap_err();
        assert_eq!(e, "a panic without a message");
        // Nesting restores the outer state.
        assert_eq!(contain(|| contain(|| 1).unwrap() + 1), Ok(2));
    }
}
