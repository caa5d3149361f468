-- Argo CD health of a Decision (resource.customizations.health.decisiongate.io_Decision).
-- Healthy: approved with nothing to run, or its plan succeeded.
-- Progressing: waiting for the operator, for approvers, or for its plan to finish.
-- Degraded: rejected, expired, failed or rolled back: what was asked did not happen.
local hs = { status = "Progressing", message = "waiting for decision-gate to evaluate the Decision" }
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local status = obj.status
local phase = status.phase
local approvals = status.approvalProgress or ""
if phase == "Pending" or phase == "Escalated" then
  hs.message = phase .. ": waiting for approval (" .. approvals .. ")"
elseif phase == "Approved" then
  if obj.spec.planRef == nil then
    hs.status = "Healthy"
    hs.message = "approved (" .. approvals .. ")"
  else
    hs.message = "approved; the plan " .. obj.spec.planRef.name .. " is about to run"
  end
elseif phase == "Executing" or phase == "RollingBack" then
  hs.message = phase .. ": the plan is running"
elseif phase == "Succeeded" then
  hs.status = "Healthy"
  local mode = "Real"
  if status.execution ~= nil and status.execution.mode ~= nil then
    mode = status.execution.mode
  end
  hs.message = "the plan succeeded (" .. mode .. ")"
else
  hs.status = "Degraded"
  hs.message = phase
  if phase == "Rejected" and status.rejection ~= nil then
    hs.message = "rejected by " .. (status.rejection.rejectedBy or "?") .. ": " .. (status.rejection.reason or "")
  end
  if status.conditions ~= nil then
    for _, condition in ipairs(status.conditions) do
      if condition.type == "Executed" and condition.message ~= nil and condition.message ~= "" then
        hs.message = phase .. ": " .. condition.message
      end
    end
  end
end
return hs
