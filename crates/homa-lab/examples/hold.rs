//! Builds a lab with one namespace and holds it until interrupted: Ctrl-C
//! or SIGTERM remove it before the process exits (status 130), thanks to
//! `homa_lab::install_signal_cleanup`. Needs root and `ip`.
//!
//! ```text
//! cargo run -p homa-lab --example hold -- my-prefix
//! ```
//!
//! Prints `ready <namespace>` once the namespace exists.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    homa_lab::install_signal_cleanup()?;
    let prefix = std::env::args().nth(1).unwrap_or_else(|| "hold".into());
    let mut lab = homa_lab::Lab::new(&prefix)?;
    let ns = lab.namespace("held")?;
    println!("ready {ns}");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
