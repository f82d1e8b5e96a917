"""The RAG lab's grader: scores any module that implements `graders.rag.interface`."""
