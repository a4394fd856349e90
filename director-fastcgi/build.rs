//! Looks for a php-fpm binary so the php-fpm interop tests run where it exists and report
//! themselves as skipped (a build warning, no tests) where it does not. CI sets
//! `DIRECTOR_REQUIRE_PHP_FPM=1` to turn a missing php-fpm into a build failure.
//! `DIRECTOR_PHP_FPM=/path/to/php-fpm` picks a binary instead of searching `/usr/sbin` and `PATH`.

use std::path::Path;

fn find_php_fpm() -> Option<String> {
    // An explicit choice wins; one that is not a file means "no php-fpm" (to check the
    // skip path on a machine that has one).
    if let Ok(explicit) = std::env::var("DIRECTOR_PHP_FPM") {
        return Path::new(&explicit).is_file().then_some(explicit);
    }
    let mut dirs: Vec<std::path::PathBuf> = vec!["/usr/sbin".into(), "/usr/local/sbin".into()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n == "php-fpm" || n.starts_with("php-fpm8") || n.starts_with("php-fpm7"))
            .collect();
        names.sort();
        if let Some(name) = names.pop() {
            return Some(dir.join(name).display().to_string());
        }
    }
    None
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_php_fpm)");
    println!("cargo::rerun-if-env-changed=DIRECTOR_REQUIRE_PHP_FPM");
    println!("cargo::rerun-if-env-changed=DIRECTOR_PHP_FPM");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-changed=/usr/sbin");
    match find_php_fpm() {
        Some(path) => {
            println!("cargo::rustc-cfg=has_php_fpm");
            println!("cargo::rustc-env=DIRECTOR_PHP_FPM_BIN={path}");
        }
        None => {
            if std::env::var("DIRECTOR_REQUIRE_PHP_FPM").is_ok_and(|v| v == "1") {
                panic!("DIRECTOR_REQUIRE_PHP_FPM=1 but no php-fpm binary was found");
            }
            println!("cargo::warning=php-fpm not found: FastCGI interop tests are skipped");
        }
    }
}
