//! taskbench: publish real Celery task messages through selectable code paths and measure each one.
//!
//! The modules form layers that import downward only (ARCHITECTURE.md has the map, and
//! `tests/layers.rs` keeps it): the shared words (`catalog`, `endpoint`, `error`, `human`, `message`,
//! `settle`, `stage`, `facts`, `host`, `resources`) -> `scenario` -> `record` -> `engine` -> `sink` -> `backend` -> `summary` ->
//! `profile` -> `run` -> `report` -> `cli`.

/// Declares a fieldless enum whose variants have stable names (as scenario files, summary.json and output
/// write them), and derives everything else from that one list: `COUNT`, `ALL` (every variant, in order),
/// `NAMES` (for error messages), `name()`, `from_name()` and a `Display` that writes the name. A variant
/// cannot be left out of one of them, and two variants with one name do not compile.
///
/// Defined here, before the modules, so every module uses it by its bare name without importing anything.
/// What else a variant means (a description, a unit) stays an ordinary `match` next to the enum.
///
/// ```ignore
/// named_enum! {
///     /// Who publishes.
///     #[derive(Clone, Copy, Debug, PartialEq, Eq)]
///     pub enum Client {
///         Taskbench => "taskbench",
///         Celery => "celery",
///     }
/// }
/// ```
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Enum:ident {
            $(
                $(#[$variant_meta:meta])*
                $Variant:ident => $name:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $Enum {
            $(
                $(#[$variant_meta])*
                $Variant,
            )+
        }

        #[allow(dead_code)]
        impl $Enum {
            /// How many variants there are.
            pub const COUNT: usize = [$($name),+].len();

            /// Every variant, in declaration order.
            pub const ALL: [$Enum; Self::COUNT] = [$($Enum::$Variant),+];

            /// Every variant's name, in declaration order.
            pub const NAMES: [&'static str; Self::COUNT] = [$($name),+];

            /// The stable name.
            pub const fn name(self) -> &'static str {
                match self {
                    $($Enum::$Variant => $name,)+
                }
            }

            /// The variant called `name`, if there is one.
            #[deny(unreachable_patterns)]
            pub fn from_name(name: &str) -> Option<$Enum> {
                match name {
                    $($name => Some($Enum::$Variant),)+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $Enum {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub mod backend;
pub mod catalog;
pub mod cli;
pub mod endpoint;
pub mod engine;
pub mod error;
pub mod facts;
pub mod host;
pub mod human;
pub mod message;
pub mod profile;
pub mod record;
pub mod report;
pub mod resources;
pub mod run;
pub mod scenario;
pub mod settle;
pub mod sink;
pub mod stage;
pub mod summary;
pub mod wire;

#[cfg(test)]
mod tests {
    named_enum! {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Fruit {
            /// A doc comment on a variant is kept.
            Apple => "apple",
            BloodOrange => "blood_orange",
        }
    }

    #[test]
    fn a_named_enum_lists_parses_and_writes_every_variant() {
        assert_eq!(Fruit::COUNT, 2);
        assert_eq!(Fruit::ALL, [Fruit::Apple, Fruit::BloodOrange]);
        assert_eq!(Fruit::NAMES, ["apple", "blood_orange"]);
        for fruit in Fruit::ALL {
            assert_eq!(Fruit::from_name(fruit.name()), Some(fruit));
            assert_eq!(fruit.to_string(), fruit.name());
        }
        assert_eq!(Fruit::from_name("Apple"), None, "names are exact");
        assert_eq!(Fruit::from_name("pear"), None);
        const NAME: &str = Fruit::BloodOrange.name();
        assert_eq!(NAME, "blood_orange");
    }
}
