//! The seals of the object-safe twins. Each is implemented for every
//! implementation of its typed trait and nothing else can name it, so
//! [`DynSource`](crate::DynSource), [`DynSink`](crate::DynSink) and the
//! factory twins are implemented by their blanket implementations only:
//! adding a method to a twin can never break a connector (since API 2.0;
//! in 1.1 a required method added to the then unsealed `DynSource` would
//! have broken a direct implementation).

/// Sealed: implemented for every [`Source`](crate::Source).
pub trait Source {}
impl<S: crate::Source> Source for S {}

/// Sealed: implemented for every [`Sink`](crate::Sink).
pub trait Sink {}
impl<S: crate::Sink> Sink for S {}

/// Sealed: implemented for every [`SourceFactory`](crate::SourceFactory).
pub trait SourceFactory {}
impl<F: crate::SourceFactory> SourceFactory for F {}

/// Sealed: implemented for every [`SinkFactory`](crate::SinkFactory).
pub trait SinkFactory {}
impl<F: crate::SinkFactory> SinkFactory for F {}
