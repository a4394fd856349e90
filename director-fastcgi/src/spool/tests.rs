use std::collections::VecDeque;

use http_body_util::BodyExt;

use super::*;

/// A body of unknown length that yields its frames one by one.
struct Frames(VecDeque<Result<Bytes, BoxError>>);

impl Frames {
    fn chunks(chunks: &[&[u8]]) -> Self {
        Self(
            chunks
                .iter()
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect(),
        )
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|r| r.map(Frame::data)))
    }
}

#[derive(Debug)]
struct TooLarge;

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("too large")
    }
}

impl std::error::Error for TooLarge {}

fn config(dir: &Path, memory: usize) -> SpoolConfig {
    SpoolConfig {
        memory,
        dir: dir.to_owned(),
    }
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[tokio::test]
async fn a_small_body_stays_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let spooled = spool(Frames::chunks(&[b"abc", b"def"]), &config(dir.path(), 6))
        .await
        .unwrap();
    assert_eq!(spooled.len(), 6);
    assert!(!spooled.on_disk());
    assert_eq!(spooled.size_hint().exact(), Some(6));
    assert_eq!(spooled.collect().await.unwrap().to_bytes(), "abcdef");
    assert_eq!(entries(dir.path()), 0);
}

#[tokio::test]
async fn a_larger_body_spills_to_an_unlinked_file_and_replays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let chunks: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 10_000]).collect();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let spooled = spool(Frames::chunks(&refs), &config(dir.path(), 25_000))
        .await
        .unwrap();
    assert!(spooled.on_disk());
    assert_eq!(spooled.len(), 400_000);
    assert_eq!(entries(dir.path()), 0, "the file is unlinked at once");
    assert_eq!(spooled.size_hint().exact(), Some(400_000));
    let bytes = spooled.collect().await.unwrap().to_bytes();
    assert_eq!(bytes, chunks.concat());
}

#[tokio::test]
async fn an_empty_body_spools_to_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spooled = spool(Frames::chunks(&[]), &config(dir.path(), 0))
        .await
        .unwrap();
    assert!(spooled.is_empty());
    assert!(spooled.collect().await.unwrap().to_bytes().is_empty());
}

#[tokio::test]
async fn a_failing_body_fails_the_spool_with_its_own_error_and_leaves_nothing() {
    for memory in [1_000_000, 4] {
        let dir = tempfile::tempdir().unwrap();
        let mut frames = Frames::chunks(&[b"part one", b"part two"]);
        frames.0.push_back(Err(Box::new(TooLarge)));
        let err = spool(frames, &config(dir.path(), memory))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RequestBody);
        let source = std::error::Error::source(&err).unwrap();
        assert!(
            source.is::<TooLarge>(),
            "the body's error is the source: {source}"
        );
        assert_eq!(entries(dir.path()), 0);
    }
}

#[tokio::test]
async fn an_unwritable_directory_is_a_spool_error() {
    let err = spool(
        Frames::chunks(&[b"more than nothing"]),
        &config(Path::new("/no/such/spool/dir"), 0),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Spool);
}
