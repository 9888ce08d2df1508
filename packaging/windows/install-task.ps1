# Registers chinaport-proxy with Task Scheduler from chinaport-proxy-task.xml: at start-up and at
# log-on, as the given user (default: you), restarted on failure, no time limit.
# Run in an elevated PowerShell from the folder that holds chinaport-proxy.exe:
#   powershell -ExecutionPolicy Bypass -File .\install-task.ps1 [-User "PC\operator"] [-Port 8780]
param(
    [string]$User = "$env:USERDOMAIN\$env:USERNAME",
    [string]$Folder = $PSScriptRoot,
    [int]$Port = 8780,
    [string]$TaskName = "chinaport-proxy"
)
$ErrorActionPreference = "Stop"
$exe = Join-Path $Folder "chinaport-proxy.exe"
if (-not (Test-Path $exe)) { throw "chinaport-proxy.exe is not in $Folder" }
& $exe check-config -config (Join-Path $Folder "config.json")
if ($LASTEXITCODE -ne 0) { throw "config.json is not valid; fix it first" }

$xml = Get-Content -Raw -Encoding UTF8 (Join-Path $Folder "chinaport-proxy-task.xml")
$xml = $xml.Replace("CUSTOMS-PC\operator", [Security.SecurityElement]::Escape($User))
$xml = $xml.Replace("C:\chinaport-proxy\chinaport-proxy.exe", [Security.SecurityElement]::Escape($exe))
$xml = $xml.Replace("<WorkingDirectory>C:\chinaport-proxy</WorkingDirectory>",
                    "<WorkingDirectory>$([Security.SecurityElement]::Escape($Folder))</WorkingDirectory>")
Register-ScheduledTask -TaskName $TaskName -Xml $xml -Force | Out-Null

if (-not (Get-NetFirewallRule -DisplayName $TaskName -ErrorAction SilentlyContinue)) {
    New-NetFirewallRule -DisplayName $TaskName -Direction Inbound -Action Allow `
        -Protocol TCP -LocalPort $Port -Program $exe | Out-Null
}
Start-ScheduledTask -TaskName $TaskName
Write-Host "registered and started task '$TaskName' as $User; firewall open on TCP $Port"
Write-Host "check: curl.exe http://127.0.0.1:$Port/health"
