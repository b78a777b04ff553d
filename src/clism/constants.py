"""Names and values that several stages must agree on, in one place (free of torch)."""

# The query token: it stands for a masked English entity in CLISM instances, and follows
# the question in QA inputs for the question-aware span head.
QUE_TOKEN = "[QUE]"

# Label value that losses skip: padding, special tokens, answers cut by truncation.
IGNORE_INDEX = -100
