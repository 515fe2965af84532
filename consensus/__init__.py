"""Tendermint-style BFT consensus as a sans-IO state machine (imports core only).

- engine:     ConsensusEngine(chain, config, signer).start/handle/replay -> actions
- events:     the events the driver feeds and the actions it executes, WAL encoding
- messages:   Vote, Proposal, CommitCertificate, DuplicateVoteEvidence, verify functions
- block:      Header, Block, BFT time
- chain:      ChainState (what is persisted with each block), validate_block
- validators: Validator, ValidatorSet (quorums, proposer rotation), ValidatorHistory
- signing:    SigningState and the SigningGuard that never signs twice
- app:        the Application protocol (check / prepare / process / finalize / commit)
- kvapp:      a deterministic key-value Application for tests and the simulator
"""
