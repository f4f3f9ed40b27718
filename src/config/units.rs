//! Durations (`30s`, `10m`, `7d`) and byte sizes (`64KiB`, `4MiB`) as configuration values.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A configured duration, written as a whole number and a unit: `ms`, `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn seconds(seconds: u64) -> Self {
        Self(std::time::Duration::from_secs(seconds))
    }

    pub const fn minutes(minutes: u64) -> Self {
        Self::seconds(minutes * 60)
    }

    pub const fn hours(hours: u64) -> Self {
        Self::seconds(hours * 3600)
    }

    pub const fn days(days: u64) -> Self {
        Self::seconds(days * 86_400)
    }

    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (number, unit) = split_number(text)?;
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("invalid duration {text:?}: the unit must be ms, s, m, h or d, as in \"30s\"")),
        };
        let millis = number
            .checked_mul(millis_per_unit)
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
        Ok(Self(std::time::Duration::from_millis(millis)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        let units = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s")];
        for (size, unit) in units {
            if millis >= size && millis % size == 0 {
                return write!(f, "{}{unit}", millis / size);
            }
        }
        write!(f, "{millis}ms")
    }
}

/// A configured size in bytes, written as a whole number and a unit: `B`, `KiB`, `MiB` or `GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (number, unit) = split_number(text)?;
        let multiplier: u64 = match unit {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(format!("invalid size {text:?}: the unit must be B, KiB, MiB or GiB, as in \"64KiB\"")),
        };
        number
            .checked_mul(multiplier)
            .map(Self)
            .ok_or_else(|| format!("invalid size {text:?}: too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (size, unit) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

fn split_number(text: &str) -> Result<(u64, &str), String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number = text[..digits]
        .parse()
        .map_err(|_| format!("invalid value {text:?}: expected a whole number followed by a unit"))?;
    Ok((number, text[digits..].trim()))
}

macro_rules! string_serde {
    ($type:ty, $expecting:literal) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;

                impl de::Visitor<'_> for Visitor {
                    type Value = $type;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }

                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$type, E> {
                        text.parse().map_err(E::custom)
                    }
                }

                deserializer.deserialize_str(Visitor)
            }
        }
    };
}

string_serde!(Duration, "a duration such as \"30s\", \"10m\" or \"7d\"");
string_serde!(ByteSize, "a size such as \"64KiB\" or \"4MiB\"");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!("30s".parse::<Duration>().unwrap(), Duration::seconds(30));
        assert_eq!("10m".parse::<Duration>().unwrap(), Duration::minutes(10));
        assert_eq!("7d".parse::<Duration>().unwrap(), Duration::days(7));
        assert_eq!("250ms".parse::<Duration>().unwrap().get().as_millis(), 250);
    }

    #[test]
    fn durations_reject_bad_text() {
        for text in ["", "s", "10", "10 weeks", "-5s", "1.5h"] {
            assert!(text.parse::<Duration>().is_err(), "{text:?}");
        }
    }

    #[test]
    fn durations_display_in_the_largest_whole_unit() {
        assert_eq!(Duration::days(7).to_string(), "7d");
        assert_eq!(Duration::seconds(90).to_string(), "90s");
        assert_eq!("1500ms".parse::<Duration>().unwrap().to_string(), "1500ms");
    }

    #[test]
    fn sizes_parse_binary_units() {
        assert_eq!("64KiB".parse::<ByteSize>().unwrap(), ByteSize(65_536));
        assert_eq!("4MiB".parse::<ByteSize>().unwrap(), ByteSize(4 << 20));
        assert_eq!("100".parse::<ByteSize>().unwrap(), ByteSize(100));
        assert!("4MB".parse::<ByteSize>().is_err());
    }
}
