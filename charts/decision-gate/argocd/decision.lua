-- Argo CD health of a Decision (resource.customizations.health.decisiongate.io_Decision).
-- Suspended: waiting on people (Argo CD's status for "waiting on a human"; see
--   `argocd app wait --suspended`).
-- Progressing: waiting for the operator, for notBefore, or for its plan to finish.
-- Healthy: approved with nothing to run, or its plan did what it asked for.
-- Degraded: rejected, expired, failed or rolled back, or a Real plan that could only run
--   as a dry run: what was asked did not happen.
-- Unknown: a phase this script does not know (a newer operator).
local hs = { status = "Progressing", message = "waiting for decision-gate to evaluate the Decision" }
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local status = obj.status
local phase = status.phase
local approvals = status.approvalProgress or ""

-- The Executed condition's message: what the operator says about the plan's run.
local function executed()
  if status.conditions ~= nil then
    for _, condition in ipairs(status.conditions) do
      if condition.type == "Executed" and condition.message ~= nil and condition.message ~= "" then
        return condition.message
      end
    end
  end
  return nil
end

if phase == "Pending" or phase == "Escalated" then
  hs.status = "Suspended"
  hs.message = phase .. ": waiting for approval (" .. approvals .. ")"
elseif phase == "Approved" then
  if obj.spec.planRef == nil then
    hs.status = "Healthy"
    hs.message = "approved (" .. approvals .. ")"
  else
    hs.message = executed() or ("approved; the plan " .. obj.spec.planRef.name .. " is about to run")
  end
elseif phase == "Executing" or phase == "RollingBack" then
  hs.message = phase .. ": the plan is running"
elseif phase == "Succeeded" then
  local asked = nil
  if status.plan ~= nil then
    asked = status.plan.mode
  end
  local ran = asked or "Real"
  if status.execution ~= nil and status.execution.mode ~= nil then
    ran = status.execution.mode
  end
  if asked == "Real" and ran ~= "Real" then
    hs.status = "Degraded"
    local why = "real execution is not allowed on this cluster"
    if status.execution ~= nil and status.execution.modeReason ~= nil then
      why = status.execution.modeReason
    end
    hs.message = "the plan asked for Real but ran as " .. ran .. ", so nothing was changed: " .. why
  else
    hs.status = "Healthy"
    hs.message = "the plan succeeded (" .. ran .. ")"
  end
elseif phase == "Rejected" or phase == "Expired" or phase == "Failed" or phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = phase
  if phase == "Rejected" and status.rejection ~= nil then
    hs.message = "rejected by " .. (status.rejection.rejectedBy or "?") .. ": " .. (status.rejection.reason or "")
  end
  local said = executed()
  if said ~= nil then
    hs.message = phase .. ": " .. said
  end
else
  hs.status = "Unknown"
  hs.message = "the phase " .. tostring(phase) .. " is not one this health check knows; update it to the operator's version"
end
return hs
