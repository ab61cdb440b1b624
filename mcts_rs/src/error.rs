//! The one error of the search: a message for people. The Python binding
//! turns it into `ValueError`.

#[derive(Debug, Clone, PartialEq)]
pub struct SearchError(pub String);

impl std::fmt::Display for SearchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SearchError {}

pub(crate) fn fail<T>(msg: String) -> Result<T, SearchError> {
    Err(SearchError(msg))
}
