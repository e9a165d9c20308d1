//! The connector binary: every `tributary` command, with the two sources
//! of this crate registered next to the built-in ones.

fn main() -> std::process::ExitCode {
    tributary_sdk::App::new()
        .version(env!("CARGO_PKG_VERSION"))
        .pull_source("json_feed", sdk_connector::feed::FeedSource::from_section)
        .push_source(
            "json_queue",
            sdk_connector::queue::QueueSource::from_section,
        )
        .run()
}
