"""Reference implementations of each lab's interface, graded by the same code as candidates."""
