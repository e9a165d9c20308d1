use crate::admin::view::{table, StatusView};
use crate::cli::StatusArgs;
use crate::exit::{CmdResult, Code, Failure};

/// Asks a running process's admin server. A stopped connector has no
/// status to show beyond its checkpoints, which `tributary state list`
/// reads from the state store.
pub async fn status(args: StatusArgs) -> CmdResult {
    if args.cluster {
        return crate::cluster::status::status(&args).await;
    }
    let (url, text) = get(&args, "/status").await?;
    let view: StatusView = serde_json::from_str(&text).map_err(|e| {
        Failure::new(
            Code::Failure,
            anyhow::anyhow!("{url} did not answer with a tributary status ({e}); is it a tributary admin server?"),
        )
    })?;
    if args.json {
        out!("{text}");
        return exit_for(&view);
    }
    out!("{}", table(&view).trim_end());
    exit_for(&view)
}

/// Non-zero when a stream needs a person, so a script or a cron check can
/// act on it; the table above says which and why.
pub(crate) fn exit_for(view: &StatusView) -> CmdResult {
    let troubled = view.troubled();
    if troubled.is_empty() {
        return Ok(Code::Success);
    }
    err!(
        "{} stream(s) failed, stuck or stale: {}",
        troubled.len(),
        troubled.join(", ")
    );
    Ok(Code::Stuck)
}

/// `GET path` of the admin server `args` name: its URL and body, or an
/// error that says what to do.
pub async fn get(args: &StatusArgs, path: &str) -> Result<(String, String), Failure> {
    let addr = crate::admin::parse_addr(&args.admin_addr)?;
    let token = crate::admin::load_token(args.admin_token_file.as_deref())?;
    let url = format!("http://{addr}{path}");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| Failure::new(Code::Failure, e))?;
    let mut request = client.get(&url);
    if let Some(t) = &token {
        request = request.bearer_auth(t.expose());
    }
    let response = request.send().await.map_err(|e| {
        Failure::new(
            Code::Failure,
            anyhow::anyhow!(
                "no tributary admin server answers at {addr} ({}); start one with `tributary run --admin-addr {addr} ...`, or read a stopped connector's checkpoints with `tributary state list CONFIG`",
                e.without_url()
            ),
        )
    })?;
    let code = response.status();
    if code == reqwest::StatusCode::UNAUTHORIZED {
        return Err(Failure::new(
            Code::Failure,
            anyhow::anyhow!(
                "the admin server at {addr} {} the token; pass --admin-token-file or set TRIBUTARY_ADMIN_TOKEN",
                if token.is_some() { "refused" } else { "requires" }
            ),
        ));
    }
    if !code.is_success() {
        return Err(Failure::new(
            Code::Failure,
            anyhow::anyhow!("the admin server at {addr} answered {code}"),
        ));
    }
    let text = response
        .text()
        .await
        .map_err(|e| Failure::new(Code::Failure, e.without_url()))?;
    Ok((url, text))
}
