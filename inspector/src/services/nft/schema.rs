//! The parts of `nft -j` output kube-proxy's service table is read from, as borrowed,
//! typed structs that skip everything else (10,000 Services parse well inside the budget):
//! maps with their elements, rules with their jump/goto/dnat/vmap/match expressions.
use std::borrow::Cow;

use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct Obj<'a> {
    #[serde(borrow, default)]
    pub(super) map: Option<Map<'a>>,
    #[serde(borrow, default)]
    pub(super) rule: Option<Rule<'a>>,
}

#[derive(Deserialize)]
pub(super) struct Map<'a> {
    #[serde(borrow)]
    pub(super) table: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) elem: Vec<ElemPair<'a>>,
}

#[derive(Deserialize)]
pub(super) struct Rule<'a> {
    #[serde(borrow)]
    pub(super) table: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) chain: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) expr: Vec<Expr<'a>>,
}

#[derive(Deserialize)]
pub(super) struct Target<'a> {
    #[serde(borrow)]
    pub(super) target: Cow<'a, str>,
}

#[derive(Deserialize)]
pub(super) struct Dnat<'a> {
    #[serde(borrow)]
    pub(super) addr: Option<Cow<'a, str>>,
    pub(super) port: Option<u16>,
}

#[derive(Deserialize)]
pub(super) struct Expr<'a> {
    #[serde(borrow, default)]
    pub(super) jump: Option<Target<'a>>,
    #[serde(borrow, default)]
    pub(super) goto: Option<Target<'a>>,
    #[serde(borrow, default)]
    pub(super) dnat: Option<Dnat<'a>>,
    #[serde(borrow, default)]
    pub(super) vmap: Option<Vmap<'a>>,
    #[serde(borrow, rename = "match", default)]
    pub(super) matches: Option<Match<'a>>,
}

/// `{"match": {"right": ...}}`: only a string right side (a set reference) matters.
#[derive(Deserialize)]
pub(super) struct Match<'a> {
    #[serde(borrow, default)]
    pub(super) right: Scalar<'a>,
}

#[derive(Deserialize)]
pub(super) struct Vmap<'a> {
    #[serde(default)]
    pub(super) key: VmapKey,
    #[serde(borrow, default)]
    pub(super) data: VmapData<'a>,
}

#[derive(Deserialize, Default)]
pub(super) struct VmapKey {
    #[serde(default)]
    pub(super) numgen: Option<Numgen>,
}

#[derive(Deserialize)]
pub(super) struct Numgen {
    #[serde(rename = "mod")]
    pub(super) modulus: u64,
}

/// Skips the rest of a JSON array without building it.
fn skip_seq<'de, A: serde::de::SeqAccess<'de>>(mut a: A) -> Result<(), A::Error> {
    while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips the rest of a JSON object without building it.
fn skip_map<'de, A: serde::de::MapAccess<'de>>(mut a: A) -> Result<(), A::Error> {
    while a
        .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
        .is_some()
    {}
    Ok(())
}

/// A vmap's data: a named map (`"@service-ips"`, not needed) or an anonymous one whose
/// elements are (slot, verdict) pairs.
#[derive(Default)]
pub(super) struct VmapData<'a>(pub(super) Vec<(Option<u64>, Option<Cow<'a, str>>)>);

impl<'de: 'a, 'a> Deserialize<'de> for VmapData<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = VmapData<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("vmap data")
            }
            fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(VmapData::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(VmapData::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = a.next_key::<&'de str>()? {
                    if k == "set" {
                        let pairs: Vec<NftPair<'de, Scalar<'de>>> = a.next_value()?;
                        out.extend(pairs.into_iter().map(|p| {
                            let slot = match p.key {
                                Some(Scalar::Num(n)) => Some(n),
                                _ => None,
                            };
                            (slot, p.verdict)
                        }));
                    } else {
                        a.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(VmapData(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[key, verdict]`: an element of a verdict map (`[{"concat": [..]}, {"goto": ..}]`) or of
/// an anonymous vmap (`[0, {"goto": {"target": chain}}]`).
pub(super) struct NftPair<'a, K> {
    pub(super) key: Option<K>,
    pub(super) verdict: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a, K: Deserialize<'de>> Deserialize<'de> for NftPair<'a, K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<K>(std::marker::PhantomData<K>);
        impl<'de, K: Deserialize<'de>> serde::de::Visitor<'de> for V<K> {
            type Value = NftPair<'de, K>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a [key, verdict] pair")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                let key = a.next_element::<K>()?;
                let verdict = a.next_element::<NftVerdict<'de>>()?.and_then(|v| v.0);
                skip_seq(a)?;
                Ok(NftPair { key, verdict })
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// `{"goto": {"target": ..}}` / `{"jump": ..}`, or a plain verdict (`{"drop": null}`,
/// `"accept"`): the target chain, or the verdict's name.
pub(super) struct NftVerdict<'a>(pub(super) Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for NftVerdict<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NftVerdict<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a verdict")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(NftVerdict(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(NftVerdict(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = None;
                while let Some(k) = a.next_key::<&'de str>()? {
                    if k == "goto" || k == "jump" {
                        out = Some(a.next_value::<Target<'de>>()?.target);
                    } else {
                        a.next_value::<serde::de::IgnoredAny>()?;
                        if out.is_none() {
                            out = Some(Cow::Borrowed(k));
                        }
                    }
                }
                Ok(NftVerdict(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON value kept only if it is a string or a number (an address, protocol name, port,
/// set reference); anything else is skipped without building it.
#[derive(Default)]
pub(super) enum Scalar<'a> {
    Str(Cow<'a, str>),
    Num(u64),
    #[default]
    Other,
}

impl Scalar<'_> {
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn port(&self) -> Option<u16> {
        match self {
            Scalar::Num(n) => u16::try_from(*n).ok(),
            Scalar::Str(s) => s.parse().ok(),
            Scalar::Other => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key part")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(u64::try_from(v).map_or(Scalar::Other, Scalar::Num))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                a: A,
            ) -> Result<Self::Value, A::Error> {
                skip_seq(a)?;
                Ok(Scalar::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                a: A,
            ) -> Result<Self::Value, A::Error> {
                skip_map(a)?;
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A map element's key: `{"concat": [..]}`, `{"elem": {"val": .., "comment": ..}}`, or a
/// scalar.
pub(super) struct ElemKey<'a> {
    pub(super) parts: Vec<Scalar<'a>>,
    pub(super) comment: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for ElemKey<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ElemKey<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map element key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ElemKey::one(Scalar::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ElemKey::one(Scalar::Str(Cow::Owned(v.to_owned()))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ElemKey::one(Scalar::Num(v)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = ElemKey::one(Scalar::Other);
                out.parts.clear();
                while let Some(k) = a.next_key::<&'de str>()? {
                    match k {
                        "concat" => out.parts = a.next_value()?,
                        "elem" => {
                            let inner: ElemKey<'de> = a.next_value()?;
                            out.parts = inner.parts;
                            out.comment = inner.comment;
                        }
                        "val" => out.parts = a.next_value::<ElemKey<'de>>()?.parts,
                        "comment" => out.comment = Some(a.next_value()?),
                        _ => {
                            a.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// An element of a verdict map.
pub(super) type ElemPair<'a> = NftPair<'a, ElemKey<'a>>;

impl<'a> ElemKey<'a> {
    pub(super) fn one(s: Scalar<'a>) -> Self {
        Self {
            parts: vec![s],
            comment: None,
        }
    }
}

impl ElemPair<'_> {
    pub(super) fn parts(&self) -> &[Scalar<'_>] {
        self.key.as_ref().map_or(&[], |k| k.parts.as_slice())
    }

    pub(super) fn comment(&self) -> Option<&str> {
        self.key.as_ref().and_then(|k| k.comment.as_deref())
    }
}
