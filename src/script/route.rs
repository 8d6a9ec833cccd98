//! `fn route(msg)`: which connectors a message goes through.
//!
//! | the script returns | decision |
//! |---|---|
//! | `"carrier-a"` | that connector |
//! | `["carrier-a", "carrier-b"]` | those connectors, tried in order (failover) |
//! | `()` or `[]` (or no `route` defined) | the default route, `routing.default` |
//! | calls `reject("reason")` | refused: 422 `rejected_by_route` with the reason |
//!
//! Naming a connector that is not configured, or returning anything else,
//! is a script error: logged, counted, and the default route is used.

use rhai::Dynamic;

use super::helpers::ScriptEnv;
use super::value::as_strings;

/// Most connectors a route lists.
const MAX_ROUTE: usize = 16;

/// What `route(msg)` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision {
    /// Use `routing.default`.
    Default,
    /// These connectors, in failover order (configured, no duplicates).
    Connectors(Vec<String>),
    /// Refuse the message with this reason.
    Reject(String),
}

/// Reads a value `route` returned.
pub(crate) fn decide(value: &Dynamic, env: &ScriptEnv) -> Result<RouteDecision, String> {
    if value.is_unit() {
        return Ok(RouteDecision::Default);
    }
    let names = as_strings(value, "the route").map_err(|e| {
        format!("{e} (return a connector name, an array of names, () for the default, or call reject(reason))")
    })?;
    if names.is_empty() {
        return Ok(RouteDecision::Default);
    }
    if names.len() > MAX_ROUTE {
        return Err(format!(
            "the route lists {} connectors; at most {MAX_ROUTE}",
            names.len()
        ));
    }
    let mut route: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if !env.has_connector(&name) {
            return Err(format!(
                "the route names connector \"{name}\", which is not configured (configured: {})",
                env.connectors.join(", ")
            ));
        }
        if !route.contains(&name) {
            route.push(name);
        }
    }
    Ok(RouteDecision::Connectors(route))
}

/// `route` with the connectors that are ready first, each group in its
/// given order: a message is queued for a connector that can send it now,
/// and those that are down stay behind it as failover. When none is ready
/// the order is kept.
pub fn order_by_health(route: Vec<String>, ready: &dyn Fn(&str) -> bool) -> Vec<String> {
    if route.len() < 2 {
        return route;
    }
    let (mut up, down): (Vec<String>, Vec<String>) = route.into_iter().partition(|c| ready(c));
    up.extend(down);
    up
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::value::str_value;

    fn env() -> ScriptEnv {
        ScriptEnv::offline(vec!["a".into(), "b".into()])
    }

    #[test]
    fn names_arrays_and_unit_are_decisions() {
        assert_eq!(decide(&Dynamic::UNIT, &env()), Ok(RouteDecision::Default));
        assert_eq!(
            decide(&str_value("a"), &env()),
            Ok(RouteDecision::Connectors(vec!["a".into()]))
        );
        let arr = Dynamic::from_array(vec![str_value("b"), str_value("a"), str_value("b")]);
        assert_eq!(
            decide(&arr, &env()),
            Ok(RouteDecision::Connectors(vec!["b".into(), "a".into()]))
        );
        assert_eq!(
            decide(&Dynamic::from_array(vec![]), &env()),
            Ok(RouteDecision::Default)
        );
    }

    #[test]
    fn ready_connectors_go_first_and_the_rest_stay_as_failover() {
        let route = vec!["a".to_string(), "b".into(), "c".into()];
        let ready = |c: &str| c != "a";
        assert_eq!(order_by_health(route.clone(), &ready), ["b", "c", "a"]);
        assert_eq!(
            order_by_health(route.clone(), &|_: &str| false),
            ["a", "b", "c"]
        );
        assert_eq!(order_by_health(route, &|_: &str| true), ["a", "b", "c"]);
    }

    #[test]
    fn unknown_connectors_and_other_values_are_errors() {
        let err = decide(&str_value("nope"), &env()).unwrap_err();
        assert!(err.contains("\"nope\"") && err.contains("a, b"), "{err}");
        let err = decide(&Dynamic::from_int(3), &env()).unwrap_err();
        assert!(err.contains("i64") || err.contains("int"), "{err}");
    }
}
