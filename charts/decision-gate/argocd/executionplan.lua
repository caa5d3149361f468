-- Argo CD health of an ExecutionPlan (resource.customizations.health.decisiongate.io_ExecutionPlan).
-- Healthy when the API server admitted every step's Job in a dry run, Degraded when it
-- refused one, Progressing until the current generation has been checked.
local hs = { status = "Progressing", message = "waiting for decision-gate to check the plan" }
if obj.status == nil or obj.status.phase == nil then
  return hs
end
if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "the latest change has not been checked yet"
  return hs
end
local message = ""
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      message = condition.message or ""
    end
  end
end
if obj.status.phase == "Ready" then
  hs.status = "Healthy"
elseif obj.status.phase == "Invalid" then
  hs.status = "Degraded"
else
  hs.status = "Unknown"
  message = "the phase " .. tostring(obj.status.phase) .. " is not one this health check knows"
end
hs.message = message
return hs
