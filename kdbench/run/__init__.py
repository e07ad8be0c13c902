"""Running a grid: trials and their ids, the runner that hands them to an executor, the
evaluation of a trained student, and the SQLite store that keeps every result."""
