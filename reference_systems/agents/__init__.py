"""The agents lab's reference systems: the support desk (world, tasks), the scripted policy model, the reference agent."""
