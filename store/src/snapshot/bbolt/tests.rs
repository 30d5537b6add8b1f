use std::io::Write;

use super::*;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn write(buckets: &[(&[u8], Pairs)]) -> (tempfile::NamedTempFile, u64) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let mut writer = Writer::new(file.reopen().expect("reopen")).expect("writer");
    for (name, pairs) in buckets {
        writer.bucket_from(name, pairs).expect("bucket");
    }
    let (_, length) = writer.finish().expect("finish");
    (file, length)
}

fn read_all(file: &tempfile::NamedTempFile, length: u64) -> Result<Vec<(Vec<u8>, Pairs)>, BboltError> {
    let reader = Reader::open(file.reopen()?, length)?;
    let mut all = Vec::new();
    for (name, bucket) in reader.buckets()? {
        let mut pairs = Vec::new();
        reader.for_each::<BboltError>(&bucket, &mut |key, value| {
            pairs.push((key.to_vec(), value.to_vec()));
            Ok(())
        })?;
        all.push((name, pairs));
    }
    Ok(all)
}

fn sample() -> Vec<(&'static [u8], Pairs)> {
    let many: Pairs = (0..20_000u64).map(|i| (i.to_be_bytes().to_vec(), format!("value {i}").into_bytes())).collect();
    // Values and keys larger than a page need overflow pages.
    let large: Pairs = (0..40u8).map(|i| (vec![i + 1; 3000 + usize::from(i) * 100], vec![i; 9000])).collect();
    vec![(b"many", many), (b"empty", Vec::new()), (b"large", large), (b"one", vec![(b"k".to_vec(), Vec::new())])]
}

#[test]
fn what_is_written_reads_back_in_order() {
    let buckets = sample();
    let (file, length) = write(&buckets);
    assert_eq!(length % PAGE_SIZE as u64, 0);
    assert_eq!(std::fs::metadata(file.path()).expect("stat").len(), length);
    let mut expected: Vec<(Vec<u8>, Pairs)> = buckets.into_iter().map(|(name, pairs)| (name.to_vec(), pairs)).collect();
    expected.sort();
    assert_eq!(read_all(&file, length).expect("reads"), expected);
}

#[test]
fn keys_out_of_order_are_refused() {
    let file = tempfile::tempfile().expect("temp file");
    let mut writer = Writer::new(file).expect("writer");
    assert!(matches!(writer.put(b"a", b"1"), Err(BboltError::NoBucket)));
    writer.begin_bucket(b"b").expect("bucket");
    writer.put(b"b", b"1").expect("first");
    assert!(matches!(writer.put(b"a", b"2"), Err(BboltError::Unsorted)));
    assert!(matches!(writer.put(b"b", b"2"), Err(BboltError::Unsorted)));
    assert!(matches!(writer.put(b"", b"2"), Err(BboltError::Unsorted)));
}

#[test]
fn one_damaged_meta_falls_back_to_the_other_two_are_an_error() {
    let (file, length) = write(&sample());
    let mut bytes = std::fs::read(file.path()).expect("read");
    bytes[PAGE_SIZE + PAGE_HEADER_BYTES + 20] ^= 0xff;
    std::fs::write(file.path(), &bytes).expect("write");
    assert_eq!(read_all(&file, length).expect("the first meta").len(), 4);
    bytes[PAGE_HEADER_BYTES + 20] ^= 0xff;
    std::fs::write(file.path(), &bytes).expect("write");
    assert!(matches!(read_all(&file, length), Err(BboltError::NoValidMeta)));
}

#[test]
fn damaged_pages_and_truncation_are_errors_not_panics() {
    let (file, length) = write(&sample());
    let original = std::fs::read(file.path()).expect("read");
    assert!(matches!(read_all(&file, length - PAGE_SIZE as u64), Err(BboltError::Corrupt(_))));
    // Garbage over every data page in turn, past the metas and the freelist: an error or other data, never a panic.
    let mut errors = 0;
    for page in 3..(length / PAGE_SIZE as u64) as usize {
        let mut bytes = original.clone();
        for (offset, byte) in bytes[page * PAGE_SIZE..page * PAGE_SIZE + 64].iter_mut().enumerate() {
            *byte ^= 0x5a ^ offset as u8;
        }
        let mut damaged = file.reopen().expect("reopen");
        damaged.write_all(&bytes).expect("write");
        errors += usize::from(read_all(&file, length).is_err());
    }
    assert!(errors > 0, "some damage must be detected");
}

#[test]
fn a_page_referenced_twice_is_an_error_not_a_long_walk() {
    let (file, length) = write(&[(b"many", sample().remove(0).1)]);
    let mut bytes = std::fs::read(file.path()).expect("read");
    let reader = Reader::open(file.reopen().expect("reopen"), length).expect("opens");
    let Bucket::Page(root) = reader.buckets().expect("buckets").remove(0).1 else { panic!("a page bucket") };
    // The bucket's root is a branch page: point its second child at its first.
    let page = root as usize * PAGE_SIZE;
    assert_eq!(le_u16(&bytes, page + 8), Some(BRANCH_PAGE));
    let first_child = PAGE_HEADER_BYTES + 8;
    let second_child = first_child + ELEMENT_BYTES;
    let child: [u8; 8] = bytes[page + first_child..page + first_child + 8].try_into().expect("8 bytes");
    bytes[page + second_child..page + second_child + 8].copy_from_slice(&child);
    std::fs::write(file.path(), &bytes).expect("write");
    let reader = Reader::open(file.reopen().expect("reopen"), length).expect("opens");
    let bucket = reader.buckets().expect("buckets").remove(0).1;
    let walked = reader.for_each::<BboltError>(&bucket, &mut |_, _| Ok(()));
    assert!(matches!(walked, Err(BboltError::Corrupt(message)) if message.contains("referenced twice")));
}
