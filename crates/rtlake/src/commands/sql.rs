//! `rtlake sql`: a statement, or an interactive prompt, over the lake.

use super::load;
use crate::cli::{self, Cli, FormatArg};
use anyhow::{Context, Result};
use std::io::{BufRead, IsTerminal, Write};

/// Runs the statement given, or those read from standard input.
pub async fn sql(cli: &Cli, a: &cli::SqlArgs) -> Result<()> {
    let cfg = load(cli, |c, o| a.lake.clone().apply(&mut c.lake, o))?;
    let lake = rtlake_lake::Lake::open(&cfg.lake)?;
    let session =
        rtlake_query::LakeSql::open_with(&lake, Default::default(), crate::config::VIEWS).await?;
    let format = match a.format {
        FormatArg::Table => rtlake_query::Format::Table,
        FormatArg::Csv => rtlake_query::Format::Csv,
        FormatArg::Json => rtlake_query::Format::Json,
    };
    if session.tables().is_empty() {
        eprintln!(
            "note: the lake at {} has no tables yet (run `rtlake demo` or `rtlake run` first)",
            lake.root()
        );
    }
    if let Some(q) = &a.sql {
        return run_statement(&session, q, format).await;
    }
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if tty {
        out!(
            "rtlake sql on {}; tables: {}",
            lake.root(),
            session.tables().join(", ")
        );
        out!("end statements with ; and quit with \\q");
    }
    let mut pending = String::new();
    let prompt = |p: &str| {
        if tty {
            print!("{}", if p.is_empty() { "rtlake> " } else { "    -> " });
            let _ = std::io::stdout().flush();
        }
    };
    prompt(&pending);
    for line in stdin.lock().lines() {
        let line = line?;
        let t = line.trim();
        if pending.is_empty() && matches!(t, "\\q" | "quit" | "exit") {
            break;
        }
        pending.push_str(&line);
        pending.push('\n');
        while let Some(end) = pending.find(';') {
            let stmt: String = pending[..end].to_string();
            pending = pending[end + 1..].trim_start().to_string();
            if !stmt.trim().is_empty()
                && let Err(e) = run_statement(&session, &stmt, format).await
            {
                if !tty {
                    return Err(e);
                }
                eprintln!("error: {e:#}");
            }
        }
        prompt(&pending);
    }
    if !pending.trim().is_empty() {
        run_statement(&session, &pending, format).await?;
    }
    Ok(())
}

async fn run_statement(
    session: &rtlake_query::LakeSql,
    stmt: &str,
    format: rtlake_query::Format,
) -> Result<()> {
    let trimmed = stmt.trim().trim_end_matches(';').trim();
    // SHOW TABLES lists the lake's tables, not DataFusion's information_schema.
    let q = if trimmed.eq_ignore_ascii_case("show tables") {
        "SELECT table_schema AS schema, table_name AS name, table_schema || '.' || table_name AS qualified \
         FROM information_schema.tables WHERE table_schema <> 'information_schema' ORDER BY 1, 2"
    } else {
        trimmed
    };
    let (schema, batches) = session
        .query(q)
        .await
        .with_context(|| format!("query failed: {}", one_line(trimmed)))?;
    let mut out = std::io::stdout().lock();
    rtlake_query::write(&mut out, &schema, &batches, format)?;
    Ok(())
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 80 {
        format!("{}...", &s[..s.floor_char_boundary(77)])
    } else {
        s
    }
}
