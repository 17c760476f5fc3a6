//! The 1000 ImageNet-1k classes, embedded so no program needs data files.
//! Class index = position in the sorted synset list (0 = n01440764 tench,
//! 999 = n15075141 toilet tissue), the convention of torchvision and of
//! `ImageFolder` over the full training set.
//!
//! `imagenet_classes.tsv` beside this file is the repository's one copy of
//! the table (provenance: fixtures/README.md; rebuilt by
//! fixtures/build_images.py). Uses std only.
//!
//! May use: nothing else of the crate.

use std::sync::OnceLock;

/// `index<TAB>synset<TAB>names`, sorted by synset; `names` is the
/// comma-joined WordNet lemma list.
pub const CLASSES_TSV: &str = include_str!("imagenet_classes.tsv");

/// One ImageNet class.
#[derive(Debug, Clone)]
pub struct Class {
    pub index: usize,
    pub synset: &'static str,
    /// Comma-joined WordNet lemmas (`tench, Tinca tinca`).
    pub name: &'static str,
}

impl Class {
    /// The first of the class's names (`tench`).
    pub fn short_name(&self) -> &'static str {
        self.name.split(',').next().unwrap_or(self.name).trim()
    }
}

/// All 1000 classes in index order.
pub fn classes() -> &'static [Class] {
    static CLASSES: OnceLock<Vec<Class>> = OnceLock::new();
    CLASSES.get_or_init(|| {
        CLASSES_TSV
            .lines()
            .enumerate()
            .map(|(i, line)| {
                let mut cols = line.splitn(3, '\t');
                let (_, synset, name) = (cols.next(), cols.next(), cols.next());
                Class {
                    index: i,
                    synset: synset.unwrap_or_default(),
                    name: name.unwrap_or_default(),
                }
            })
            .collect()
    })
}

/// Class index of a synset id (`n01440764` → 0).
pub fn index_of_synset(synset: &str) -> Option<usize> {
    classes().binary_search_by(|c| c.synset.cmp(synset)).ok()
}

/// The short name of a synset's class (`n01443537` → `goldfish`), or ""
/// when the synset is not an ImageNet-1k class.
pub fn class_name(synset: &str) -> &'static str {
    index_of_synset(synset).map_or("", |i| classes()[i].short_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_class_list_is_complete_and_sorted() {
        let c = classes();
        assert_eq!(c.len(), 1000);
        assert!(c.windows(2).all(|w| w[0].synset < w[1].synset));
        assert_eq!(c[0].synset, "n01440764");
        assert!(c[0].name.starts_with("tench"));
        assert_eq!(c[999].synset, "n15075141");
        assert!(c[999].name.starts_with("toilet tissue"));
        assert_eq!(index_of_synset("n15075141"), Some(999));
        assert_eq!(index_of_synset("n00000000"), None);
        // The line's own index column agrees with the position.
        for (i, line) in CLASSES_TSV.lines().enumerate() {
            assert_eq!(line.split('\t').next(), Some(i.to_string().as_str()));
        }
    }

    #[test]
    fn class_names_are_the_first_lemma() {
        assert_eq!(class_name("n01440764"), "tench");
        assert_eq!(class_name("n01443537"), "goldfish");
        assert_eq!(class_name("n15075141"), "toilet tissue");
        assert_eq!(class_name("n00000000"), "");
        assert_eq!(class_name(""), "");
    }
}
