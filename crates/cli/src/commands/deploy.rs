//! `tributary deploy CONFIG... --cluster C --bootstrap B` and `tributary
//! undeploy NAME...`: write the cluster's config topic in Kafka directly,
//! as the workers' `POST /connectors` and `DELETE /connectors/{name}` do.

use crate::cluster::args::{DeployArgs, UndeployArgs};
use crate::cluster::kafka::{self, Deployed};
use crate::cluster::{check_text, Names};
use crate::exit::{CmdResult, Code, Failure};

fn names(cluster: &str) -> Result<Names, Failure> {
    Names::new(cluster).map_err(|e| Failure::new(Code::Config, anyhow::anyhow!(e)))
}

pub async fn deploy(args: DeployArgs) -> CmdResult {
    let names = names(&args.target.cluster)?;
    let bootstrap = &args.target.bootstrap;
    // Every file checked before any is written.
    let mut checked = Vec::new();
    for path in &args.configs {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::new(
                Code::Config,
                anyhow::anyhow!("{}: cannot read: {e}", path.display()),
            )
        })?;
        let name = text
            .parse::<toml_edit::DocumentMut>()
            .ok()
            .and_then(|d| d.get("name").and_then(|n| n.as_str()).map(str::to_string))
            .unwrap_or_default();
        check_text(path, &names, bootstrap, &name, &text)
            .map_err(|e| Failure::new(Code::Config, anyhow::anyhow!(e)))?;
        checked.push((name, text));
    }
    for (name, text) in checked {
        let (outcome, entry) = kafka::deploy(bootstrap, &names, &name, &text)
            .await
            .map_err(|e| Failure::new(Code::Failure, e))?;
        match outcome {
            Deployed::Created => out!(
                "{name}: deployed to cluster {} (slot {})",
                names.cluster,
                entry.slot
            ),
            Deployed::Updated => out!(
                "{name}: config changed (version {}); its worker restarts it",
                entry.version
            ),
            Deployed::Unchanged => out!("{name}: unchanged"),
        }
    }
    Ok(Code::Success)
}

pub async fn undeploy(args: UndeployArgs) -> CmdResult {
    let names = names(&args.target.cluster)?;
    for name in &args.names {
        kafka::undeploy(&args.target.bootstrap, &names, name)
            .await
            .map_err(|e| Failure::new(Code::Config, e))?;
        out!(
            "{name}: undeployed from cluster {}; its worker stops it",
            names.cluster
        );
    }
    Ok(Code::Success)
}
