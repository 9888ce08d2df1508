//! The customs formats: XML canonicalisation, CEB XML-DSig and the 179 payment data. Nothing in
//! here serves HTTP; the endpoints that use it live in `crate::http`.

pub mod c14n;
pub mod cardsig;
pub mod ceb;
pub mod cert;
pub mod customs179;
pub mod upload;
