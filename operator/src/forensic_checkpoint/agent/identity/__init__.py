"""The agent's own serving identity (``--serving-certificate=csr``): a key made on the node, a
certificate for its node's name from the operator's signer, renewed before it expires."""
