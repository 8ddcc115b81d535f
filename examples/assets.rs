//! Generates the man pages and shell completions:
//! `cargo run --example assets -- DIR` (default `target/assets`).

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/assets".to_owned());
    for path in shm_tools::cli::assets::generate(std::path::Path::new(&dir))? {
        println!("{}", path.display());
    }
    Ok(())
}
