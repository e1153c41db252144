//! Fuzz target: arbitrary bytes as a project file (RON) into `Project::parse`, the text half of
//! `Project::load`. Parsing must never panic; a project that loads must write back
//! (`Project::to_text`) to text that loads again and writes the same text (saving a loaded
//! project never produces a file the studio cannot open).

#![no_main]

use libfuzzer_sys::fuzz_target;
use qatlas::project::Project;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/work/p.qatlas.ron");
    let Ok(p) = Project::parse(text, path) else {
        return;
    };
    let _ = p.plan_with_pins();
    let written = p.to_text(path).expect("a loaded project writes as RON");
    let back = Project::parse(&written, path).expect("a written project loads again");
    let rewritten = back.to_text(path).expect("a reloaded project writes again");
    assert_eq!(written, rewritten, "writing a reloaded project changes it");
});
