//! The layering of docs/architecture.md, checked: the general crates name no domain, and no
//! crate depends on one above it.

use std::path::{Path, PathBuf};

/// The crates that know no domain.
const GENERAL: &[&str] = &[
    "rtlake-core",
    "rtlake-kafka",
    "rtlake-registry",
    "rtlake-lake",
    "rtlake-stream",
    "rtlake-query",
    "rtlake-web",
];

/// Words of the bike domain, matched as whole words, any case.
const DOMAIN_WORDS: &[&str] = &["bike", "bikes", "station", "district", "seoul"];

fn crates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The domain words in `text`, as `line: word` for each hit.
fn domain_words(text: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let lower = line.to_ascii_lowercase();
        for word in lower.split(|c: char| !c.is_ascii_alphanumeric()) {
            if DOMAIN_WORDS.contains(&word) {
                hits.push(format!("{}: {word}: {}", n + 1, line.trim()));
            }
        }
    }
    hits
}

#[test]
fn the_general_crates_name_no_domain() {
    let mut hits = Vec::new();
    let mut seen = 0;
    for c in GENERAL {
        let mut all = Vec::new();
        files(&crates().join(c), &mut all);
        for f in all {
            // Sources, assets, manifests and their tests; not binary files.
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            seen += 1;
            for h in domain_words(&text) {
                hits.push(format!("{}:{h}", f.display()));
            }
        }
    }
    assert!(seen > 50, "the crates' files were read ({seen})");
    assert!(
        hits.is_empty(),
        "the general crates name the bike domain:\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_check_finds_a_domain_word() {
    assert_eq!(domain_words("let n = 1;\n// Seoul's stations").len(), 1);
    assert!(domain_words("stationary districts_x").is_empty());
}

/// Each crate's `rtlake-*` dependencies: below it in the layers, never above.
#[test]
fn no_crate_depends_on_one_above_it() {
    // The layers, lowest first; a crate may depend on crates of lower layers only.
    let layers: &[&[&str]] = &[
        &["rtlake-core"],
        &[
            "rtlake-kafka",
            "rtlake-registry",
            "rtlake-lake",
            "rtlake-broker",
        ],
        &["rtlake-stream", "rtlake-query"],
        &["rtlake-web"],
        &["rtlake-bikes"],
        &["rtlake"],
    ];
    let layer = |c: &str| layers.iter().position(|l| l.contains(&c)).unwrap();
    for (i, l) in layers.iter().enumerate() {
        for c in *l {
            let manifest = std::fs::read_to_string(crates().join(c).join("Cargo.toml")).unwrap();
            let deps = manifest
                .split("[dev-dependencies]")
                .next()
                .unwrap_or_default()
                .lines()
                .filter_map(|line| line.split(['.', ' ', '=']).next())
                .filter(|d| d.starts_with("rtlake") && *d != *c);
            for d in deps {
                assert!(
                    layer(d) < i,
                    "{c} depends on {d}, which is not below it (docs/architecture.md)"
                );
            }
        }
    }
}
