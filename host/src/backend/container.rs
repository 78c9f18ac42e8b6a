//! The container backend adapter. The container route (a full Ubuntu container per sandbox) is
//! not built yet; until it is, everything routed here is refused with `ROUTE_UNAVAILABLE` and
//! the planner's reason, never guessed at or run elsewhere.

use crate::api::error::ApiError;

/// Refuses with the reason the wasm route declined.
///
/// # Errors
/// Always [`ApiError::RouteUnavailable`].
pub fn unavailable(reason: &str) -> ApiError {
    ApiError::RouteUnavailable {
        route_reason: reason.to_owned(),
        message: format!("{reason}; the container route is not available in this build"),
    }
}
