//! Fault injection: rules, their compact spec grammar, matching and Lean-shaped
//! failures.
