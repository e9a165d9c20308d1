use crate::cli::ConvertArgs;
use crate::exit::{CmdResult, Code, Failure};
use anyhow::anyhow;
use std::io::Write;

/// Converts a Kafka Connect ChargeOver config to TOML, on stdout or into
/// `--output` (never over an existing file without `--force`). Warnings and
/// notes go to stderr.
pub fn convert(args: ConvertArgs) -> CmdResult {
    if let Some(out) = &args.output {
        if !args.force && out.exists() {
            return Err(refuse_overwrite(out));
        }
    }
    let bytes = std::fs::read(&args.file).map_err(|e| {
        Failure::new(
            Code::Config,
            anyhow!("{}: cannot read: {e}", args.file.display()),
        )
    })?;
    let converted =
        crate::convert::convert(&args.file, &bytes).map_err(|e| Failure::new(Code::Config, e))?;
    for note in &converted.notes {
        err!("{}", tributary_core::secret::redact(note));
    }
    let write_failed =
        |what: String, e: std::io::Error| Failure::new(Code::Failure, anyhow!("{what}: {e}"));
    match &args.output {
        None => std::io::stdout()
            .lock()
            .write_all(converted.toml.as_bytes())
            .map_err(|e| write_failed("stdout".into(), e))?,
        Some(out) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true);
            if args.force {
                options.create(true).truncate(true);
            } else {
                // Refuses a file created since the check above, too.
                options.create_new(true);
            }
            let mut file = options.open(out).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    refuse_overwrite(out)
                } else {
                    write_failed(out.display().to_string(), e)
                }
            })?;
            file.write_all(converted.toml.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| write_failed(out.display().to_string(), e))?;
            err!("wrote {}", out.display());
        }
    }
    Ok(Code::Success)
}

fn refuse_overwrite(out: &std::path::Path) -> Failure {
    Failure::new(
        Code::Config,
        anyhow!(
            "{}: already exists; pass --force to overwrite it",
            out.display()
        ),
    )
}
