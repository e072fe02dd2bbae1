"""Foreign-code corpus: hand-written NumPy RNN/LSTM code in the shapes and idioms of public repositories,
course assignments and books, written for this project (nothing copied). Each module has a correct version
and planted bugs (``BUGS``); ``cases.py`` turns them into checker calls with their expected verdicts."""
