//! [`Chain`]: an error with its causes, for logs and messages.

/// Shows an error followed by each of its sources, `what: cause: cause's cause`, as `{:#}`
/// shows an `anyhow::Error`. Errors keep their cause as `source()` rather than in their own
/// text; a log line that prints only the error would lose it.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    #[error("sink: stage s0")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_shown() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(Chain(&e).to_string(), "sink: stage s0: disk full");
    }
}
