"""RAG adapters over the producer: LangChain (`embedq.integrations.langchain`, extra
``langchain``) and LlamaIndex (`embedq.integrations.llamaindex`, extra ``llamaindex``).

Each module imports its framework, so import the one you use; neither imports torch.
"""
