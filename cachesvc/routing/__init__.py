"""The service side of adapter routing: pools of LoRA adapters on their replicas, paging through the pager
drivers, feedback for the router and its saved state. The routing logic itself is in cachesvc.policies.routing."""
