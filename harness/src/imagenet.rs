//! The 1000 ImageNet-1k classes, embedded so the binary needs no data files.
//! Class index = position in the sorted synset list (0 = n01440764 tench,
//! 999 = n15075141 toilet tissue), the convention of torchvision and of
//! `ImageFolder` over the full training set.

use std::sync::OnceLock;

/// `index<TAB>synset<TAB>name`, sorted by synset.
const CLASSES_TSV: &str = include_str!("imagenet_classes.tsv");

/// One ImageNet class.
#[derive(Debug, Clone)]
pub struct Class {
    pub index: usize,
    pub synset: &'static str,
    pub name: &'static str,
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
}
