"""Layer 8 of the tests: real Kubernetes control-plane programs judge what the app synthesizes
(README, Conformance). `binaries` builds and caches the programs; the rest starts them and applies
a cdk.out the way CloudFormation and the CDK's kubectl handler would."""
