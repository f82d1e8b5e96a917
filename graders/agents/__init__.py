"""The agents lab: interface (the contract), host (the agent in the sandbox), desk (world + model server), grade()."""
