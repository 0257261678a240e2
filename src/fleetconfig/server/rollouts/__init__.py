"""Progressive rollouts: a release deployed wave by wave, each wave gated on robot health."""
