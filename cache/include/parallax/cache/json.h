#pragma once
// nlohmann::json conversions for rows and reports (the CLI's --json output).
// Enums are written as their column strings; from_json throws nlohmann::json exceptions on
// missing fields and std::invalid_argument on unknown status strings. Cubins are base64.

#include <nlohmann/json.hpp>

#include "parallax/cache/reports.h"
#include "parallax/cache/rows.h"

namespace parallax::cache {

void to_json(nlohmann::json& j, MeasurementStatus v);
void from_json(const nlohmann::json& j, MeasurementStatus& v);
void to_json(nlohmann::json& j, RunStatus v);
void from_json(const nlohmann::json& j, RunStatus& v);

void to_json(nlohmann::json& j, const DeviceInfo& v);
void from_json(const nlohmann::json& j, DeviceInfo& v);
void to_json(nlohmann::json& j, const Measurement& v);
void from_json(const nlohmann::json& j, Measurement& v);
void to_json(nlohmann::json& j, const BestConfig& v);
void from_json(const nlohmann::json& j, BestConfig& v);
void to_json(nlohmann::json& j, const BinaryEntry& v);
void from_json(const nlohmann::json& j, BinaryEntry& v);
void to_json(nlohmann::json& j, const RunInfo& v);
void from_json(const nlohmann::json& j, RunInfo& v);

void to_json(nlohmann::json& j, const RowCounts& v);
void to_json(nlohmann::json& j, const ImportStats& v);
void to_json(nlohmann::json& j, const VerifyReport& v);

}  // namespace parallax::cache
