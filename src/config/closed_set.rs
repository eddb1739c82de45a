//! Declares a closed set of label values once: the enum, every variant in `ALL`, and each
//! variant's label.
//!
//! Outcomes, phases, reasons, conditions and the other sets the monitor exports as label values
//! are closed: their series exist from start-up, and arrays of per-variant handles are indexed by
//! the variant. A hand-kept `ALL` beside the enum can miss a new variant, which then has no series
//! (or indexes past an array). Declared through this macro, a variant cannot be left out of
//! `ALL`, and its label sits on the same line as its name.
//!
//! It lives in `config`, the leaf stage, so that every stage can declare its sets with it.

/// `closed_set! { #[derive(…)] pub enum Name { /// doc
///     Variant => "label", … } }` declares the enum with `ALL`, `as_label` and `index`.
macro_rules! closed_set {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident => $label:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in declaration order (the order of its series).
            $vis const ALL: [Self; [$($label),+].len()] = [$(Self::$variant),+];

            /// The label value.
            $vis fn as_label(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }

            /// The variant's position in [`Self::ALL`].
            #[allow(dead_code, reason = "not every set indexes an array by its variants")]
            $vis fn index(self) -> usize {
                self as usize
            }
        }
    };
}

pub(crate) use closed_set;

#[cfg(test)]
mod tests {
    closed_set! {
        /// A set for the test.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Colour {
            /// First.
            Red => "red",
            /// Second.
            Green => "green",
        }
    }

    #[test]
    fn all_lists_every_variant_in_order_with_its_label_and_index() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::Green]);
        assert_eq!(Colour::ALL.map(Colour::as_label), ["red", "green"]);
        for (i, colour) in Colour::ALL.into_iter().enumerate() {
            assert_eq!(colour.index(), i);
        }
    }
}
