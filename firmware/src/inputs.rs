//! The images a user names: files and folders expanded into one sorted list of image files.
//!
//! Every command that reads images (`classify`, `segment`, `count`, the simulator's slide) walks its
//! inputs here, so they all accept the same formats ([`EXTENSIONS`]: JPEG, PNG, BMP, TIFF), search folders
//! the same way (recursively, sorted by path), refuse a folder with no image in it by name, and count a
//! file named twice (directly and through its folder, or twice on the command line) once.
//!
//! This module only finds files; decoding is [`crate::frame::Frame::open`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Most entries (files and folders) one folder walk visits: a slide or an export holds thousands of
/// images, a walk of `/` or `/proc` millions; past this the walk stops with [`InputError::TooLarge`]
/// instead of searching the whole disk.
pub const MAX_ENTRIES: usize = 200_000;

/// Deepest folder nesting a walk follows (symbolic links to folders are never followed, so a link loop
/// cannot trap it).
pub const MAX_DEPTH: usize = 32;

/// File extensions read as images (compared ignoring case).
pub const EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "bmp", "tif", "tiff"];

/// Why an input names no image.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The path does not exist.
    #[error("{0}: no such file or folder")]
    Missing(PathBuf),
    /// A folder could not be listed.
    #[error("{path}: cannot read folder")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A folder holds more than [`MAX_ENTRIES`] entries or nests deeper than [`MAX_DEPTH`].
    #[error("{0}: more than {MAX_ENTRIES} entries or {MAX_DEPTH} levels of folders: name the folder that holds the images")]
    TooLarge(PathBuf),
    /// A folder holds no file with an image extension.
    #[error("{0}: no images in this folder (looked for .jpg, .jpeg, .png, .bmp, .tif and .tiff, recursively)")]
    NoImages(PathBuf),
}

impl InputError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            InputError::Missing(p) | InputError::NoImages(p) | InputError::TooLarge(p) => p,
            InputError::Folder { path, .. } => path,
        }
    }
}

/// Whether a file name has one of the [`EXTENSIONS`].
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The inputs, expanded.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Image files in order (folders expanded, sorted), and the inputs that name none, where they stood.
    pub items: Vec<Result<PathBuf, InputError>>,
    /// Files named more than once; each is in `items` once, where it first appeared.
    pub duplicates: Vec<PathBuf>,
}

impl Inputs {
    /// The image files only.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.items
            .iter()
            .filter_map(|i| i.as_ref().ok().map(PathBuf::as_path))
    }
}

/// Expands files and folders (recursively, sorted) into image files. A file named directly is kept
/// whatever its extension, so a bad one is reported by name when it is decoded.
pub fn expand<P: AsRef<Path>>(inputs: &[P]) -> Inputs {
    let mut out = Inputs::default();
    let mut seen = HashSet::new();
    let mut push = |out: &mut Inputs, p: PathBuf| {
        // The same file by two names (`a/x.jpg` and `a/./x.jpg`, or via a folder) is one file.
        let key = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if seen.insert(key) {
            out.items.push(Ok(p));
        } else {
            out.duplicates.push(p);
        }
    };
    for input in inputs {
        let input = input.as_ref();
        if input.is_dir() {
            match list_folder(input) {
                Ok(files) => files.into_iter().for_each(|f| push(&mut out, f)),
                Err(e) => out.items.push(Err(e)),
            }
        } else if input.exists() {
            push(&mut out, input.to_owned());
        } else {
            out.items.push(Err(InputError::Missing(input.to_owned())));
        }
    }
    out
}

/// Every image under `path` (the file itself if it is a file), sorted; an error when there is none.
pub fn list_images(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    if path.is_dir() {
        list_folder(path)
    } else if path.exists() {
        Ok(vec![path.to_owned()])
    } else {
        Err(InputError::Missing(path.to_owned()))
    }
}

fn list_folder(dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    fn walk(
        dir: &Path,
        depth: usize,
        visited: &mut usize,
        out: &mut Vec<PathBuf>,
        top: &Path,
    ) -> Result<(), InputError> {
        if depth > MAX_DEPTH {
            return Err(InputError::TooLarge(top.to_owned()));
        }
        let rd = std::fs::read_dir(dir).map_err(|source| InputError::Folder {
            path: dir.to_owned(),
            source,
        })?;
        let mut entries = Vec::new();
        for e in rd.filter_map(|e| e.ok()) {
            *visited += 1;
            if *visited > MAX_ENTRIES {
                return Err(InputError::TooLarge(top.to_owned()));
            }
            // The entry's own type: a symbolic link to a folder is not a folder here.
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            entries.push((e.path(), is_dir));
        }
        entries.sort();
        for (p, is_dir) in entries {
            if is_dir {
                walk(&p, depth + 1, visited, out, top)?;
            } else if is_image(&p) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, 0, &mut 0, &mut out, dir)?;
    if out.is_empty() {
        return Err(InputError::NoImages(dir.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("leuko-inputs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn extensions_ignore_case() {
        assert!(is_image(Path::new("a/B.BMP")));
        assert!(is_image(Path::new("x.tif")));
        assert!(is_image(Path::new("x.Jpeg")));
        assert!(!is_image(Path::new("x.txt")));
        assert!(!is_image(Path::new("bmp")));
    }

    #[test]
    fn folders_are_walked_sorted_and_a_file_named_twice_is_listed_once() {
        let d = tmp("walk");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        for f in ["b.png", "a.BMP", "sub/c.tiff", "notes.txt"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        let again = d.join("sub/../a.BMP");
        let got = expand(&[d.clone(), again.clone()]);
        let files: Vec<_> = got.files().map(Path::to_path_buf).collect();
        assert_eq!(
            files,
            [d.join("a.BMP"), d.join("b.png"), d.join("sub/c.tiff")]
        );
        assert_eq!(got.duplicates, [again]);
    }

    #[test]
    fn a_folder_without_images_and_a_missing_path_are_errors_by_name() {
        let d = tmp("empty");
        std::fs::write(d.join("readme.txt"), b"x").unwrap();
        let got = expand(&[d.clone(), d.join("gone.jpg")]);
        let errs: Vec<String> = got
            .items
            .iter()
            .map(|i| i.as_ref().unwrap_err().to_string())
            .collect();
        assert!(
            errs[0].contains("no images") && errs[0].contains("empty"),
            "{errs:?}"
        );
        assert!(errs[1].contains("gone.jpg"), "{errs:?}");
        assert!(matches!(list_images(&d), Err(InputError::NoImages(_))));
    }
}
