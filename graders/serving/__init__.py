"""The serving lab's grader: scores any module that implements `graders.serving.interface`."""
