//! The Stripe Reporting connector (`type = "stripe_reporting"`, seed 004):
//! one stream per report type × timezone, read in rounds of asynchronous
//! report runs that can never wedge the stream's state.
//!
//! | module | what it owns |
//! |---|---|
//! | `config` | the `[source]` table |
//! | `api` | the Reporting API calls on the shared HTTP client, and Stripe's objects |
//! | `source` | rounds, the checkpoint, waiting, failures and the stuck mark, CSV rows |

mod api;
mod config;
mod source;
#[cfg(test)]
mod tests;

pub use config::StripeReportingConfig;
pub use source::{
    apply_defaults, parse_instant, stream_name, StripeCheckpoint, StripeReader,
    StripeReportingSource,
};
