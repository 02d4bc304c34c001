#include "core/measure.hpp"

namespace tasker::health {

DatabaseCheck::~DatabaseCheck() = default;

QueueDepthSource::~QueueDepthSource() = default;

} // namespace tasker::health
