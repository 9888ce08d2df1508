//! The signing workflows: the card's signing certificate, a signature obtained from the card,
//! the self-check that every signature verifies against that certificate before it is answered
//! or uploaded, and the two things signed with them (a CEB message, a customs-179 order). They
//! use the UKey and the failure webhook, and answer a [`SignError`]; `crate::http` turns that
//! into a status in one place (`http::domain`). Nothing here serves HTTP. The formats
//! themselves (XML-DSig, the 179 source string) are `crate::customs`, which knows no card.

mod card;
mod error;
mod workflows;

pub use card::{Card, SIGN_METHOD, SignCert};
pub use error::SignError;
pub use workflows::{CebSigned, sign_179, sign_ceb, sign_source};
