-- Argo CD health of an ApprovalPolicy (resource.customizations.health.decisiongate.io_ApprovalPolicy).
-- Healthy when every rule can be applied, Degraded when the policy is Invalid (and so not
-- applied), Progressing until its current generation has been checked.
local hs = { status = "Progressing", message = "waiting for decision-gate to check the policy" }
if obj.status == nil or obj.status.phase == nil then
  return hs
end
if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "the latest change has not been checked yet"
  return hs
end
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      hs.message = condition.message or ""
    end
  end
end
if obj.status.phase == "Ready" then
  hs.status = "Healthy"
elseif obj.status.phase == "Invalid" then
  hs.status = "Degraded"
else
  hs.status = "Unknown"
  hs.message = "the phase " .. tostring(obj.status.phase) .. " is not one this health check knows"
end
return hs
