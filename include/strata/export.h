// What libstrata.so and libstrata_ec2.so export: both build with hidden visibility
// (-fvisibility=hidden), so that only what a public header declares with STRATA_EXPORT is
// linkable; the engine's and the EC2 layer's internals stay internal (tests/symbols_test.sh).
#ifndef STRATA_EXPORT_H_
#define STRATA_EXPORT_H_

#define STRATA_EXPORT [[gnu::visibility("default")]]

#endif  // STRATA_EXPORT_H_
