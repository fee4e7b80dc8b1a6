//! inspector: live container/pod network tracing on tc/TCX, with names for every hop.
//! See docs/architecture.md for how the parts fit together.
pub mod agent;
pub mod bench;
pub mod cli;
pub mod explain;
pub mod flows;
pub mod fuzzing;
pub mod identity;
pub mod lab;
pub mod net;
pub mod output;
pub mod probe;
pub mod services;
pub mod session;
pub mod sys;
pub mod topology;
pub mod traffic;
