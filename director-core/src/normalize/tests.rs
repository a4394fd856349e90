use proptest::prelude::*;

use super::*;

fn norm(path: &str) -> Result<String, PathError> {
    normalize_path(path).map(Cow::into_owned)
}

#[test]
fn the_four_spellings_of_a_denied_prefix_become_one() {
    for path in [
        "/inc/x",
        "/%69nc/x",
        "/%69%6E%63/x",
        "//inc/x",
        "/lib/../inc/x",
        "/lib/./../inc//x",
        "/%2e/inc/x",
        "/lib/%2E%2e/inc/x",
    ] {
        assert_eq!(norm(path).as_deref(), Ok("/inc/x"), "{path}");
    }
    assert_eq!(
        norm("/doku.php/../inc/init.php").as_deref(),
        Ok("/inc/init.php")
    );
}

#[test]
fn normal_paths_are_borrowed() {
    for path in ["/", "/a", "/a/b/", "/a.b/.c/..d/...", "/~user/x-y_z"] {
        assert!(
            matches!(normalize_path(path), Ok(Cow::Borrowed(p)) if p == path),
            "{path}"
        );
    }
}

#[test]
fn reserved_encodings_stay_encoded_in_uppercase() {
    assert_eq!(norm("/a%3fb%20c").as_deref(), Ok("/a%3Fb%20c"));
    assert_eq!(norm("/%c3%a9t%C3%A9").as_deref(), Ok("/%C3%A9t%C3%A9"));
    assert_eq!(norm("/100%25").as_deref(), Ok("/100%25"));
    // Decoding happens once: `%252e` is the text "%2e", not a dot.
    assert_eq!(norm("/a/%252e%252e/b").as_deref(), Ok("/a/%252e%252e/b"));
}

#[test]
fn dot_segments_and_trailing_slashes() {
    let cases = [
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/..", "/"),
        ("/a/b/../../", "/"),
        ("/a//", "/a/"),
        ("//", "/"),
        ("/.", "/"),
        ("/a/./b", "/a/b"),
        ("/a/b/../c/./d", "/a/c/d"),
        ("/a/...", "/a/..."),
    ];
    for (path, want) in cases {
        assert_eq!(norm(path).as_deref(), Ok(want), "{path}");
    }
}

#[test]
fn an_encoded_slash_is_refused() {
    assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSlash));
    assert_eq!(norm("/a%2fb"), Err(PathError::EncodedSlash));
}

#[test]
fn an_encoded_nul_is_refused() {
    assert_eq!(norm("/vars.php%00.css"), Err(PathError::EncodedNul));
}

#[test]
fn encoded_control_bytes_are_refused() {
    for path in ["/a%0Ab", "/a%0d%0aSet-Cookie:x", "/a%1f", "/a%7F"] {
        assert_eq!(norm(path), Err(PathError::ControlByte), "{path}");
    }
}

#[test]
fn raw_control_bytes_are_refused() {
    for path in ["/a\tb", "/a\0", "/a\x7f", "/a\r\n"] {
        assert_eq!(norm(path), Err(PathError::ControlByte), "{path:?}");
    }
}

#[test]
fn malformed_percent_encodings_are_refused() {
    for path in ["/a%", "/a%2", "/a%g0", "/a%0g", "/%%41"] {
        assert_eq!(norm(path), Err(PathError::BadPercentEncoding), "{path}");
    }
}

#[test]
fn paths_above_the_root_are_refused() {
    for path in ["/..", "/../x", "/a/../../x", "/%2e%2e/etc/passwd", "//../x"] {
        assert_eq!(norm(path), Err(PathError::AboveRoot), "{path}");
    }
}

#[test]
fn a_path_must_be_absolute() {
    assert_eq!(norm(""), Err(PathError::NotAbsolute));
    assert_eq!(norm("*"), Err(PathError::NotAbsolute));
    assert_eq!(norm("a/b"), Err(PathError::NotAbsolute));
}

/// Paths built from the pieces that matter: separators, dots, encodings of every class.
fn path_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%00".to_owned()),
        Just("%0a".to_owned()),
        Just("%".to_owned()),
        Just("%25".to_owned()),
        Just("%3f".to_owned()),
        Just("%c3%a9".to_owned()),
        Just("é".to_owned()),
        "[a-zA-Z0-9_~-]{1,3}",
        "%[0-9a-fA-F]{2}",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| format!("/{}", pieces.concat()))
}

proptest! {
    #[test]
    fn normalising_is_idempotent(path in path_strategy()) {
        if let Ok(once) = normalize_path(&path) {
            let twice = normalize_path(&once);
            prop_assert_eq!(twice.as_deref(), Ok(&*once));
        }
    }

    #[test]
    fn a_normal_path_has_no_alternative_spellings(path in path_strategy()) {
        if let Ok(out) = normalize_path(&path) {
            prop_assert!(out.starts_with('/'));
            prop_assert!(!out.contains("//"), "{}", out);
            for segment in out.split('/') {
                prop_assert!(segment != "." && segment != "..", "{}", out);
            }
            // Only reserved, non-control bytes stay encoded, and in uppercase hex.
            let bytes = out.as_bytes();
            for (i, _) in out.match_indices('%') {
                let hex = &out[i + 1..i + 3];
                prop_assert_eq!(hex, hex.to_ascii_uppercase());
                let value = u8::from_str_radix(hex, 16).unwrap();
                prop_assert!(!is_unreserved(value) && !is_control(value) && value != b'/');
            }
            prop_assert!(!bytes.iter().any(|&b| is_control(b)));
        }
    }

    #[test]
    fn refusals_are_for_the_refused_pieces(path in path_strategy()) {
        if let Err(err) = normalize_path(&path) {
            let lower = path.to_ascii_lowercase();
            let explained = match err {
                PathError::EncodedSlash => lower.contains("%2f"),
                PathError::EncodedNul => lower.contains("%00"),
                PathError::ControlByte => (0..0x20u8).chain([0x7f]).any(|b| lower.contains(&format!("%{b:02x}"))),
                PathError::BadPercentEncoding => path.contains('%'),
                PathError::AboveRoot => lower.contains("..") || lower.contains("%2e"),
                PathError::NotAbsolute => false,
            };
            prop_assert!(explained, "{} refused as {:?}", path, err);
        }
    }
}
